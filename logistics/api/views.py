"""Carriers, return shipments and their tracking events, return addresses (退货地址管理) and the nearest
drop-off points: thin adapters over ``logistics`` services and selectors, with the conventions of
``aftersales.api.views`` (scoped 404, coded 403, one envelope, cursor pages)."""

from __future__ import annotations

import django_filters
from django.db.models import Prefetch
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response

from aftersales.api.filters import ChoiceInFilter
from aftersales.api.views import LogPagination, parse
from logistics import addresses, dropoffs
from logistics.api import serializers as ls
from logistics.models import Carrier, ReturnAddress, ReturnShipment, ShipmentStatus, TrackingEvent, TrackingNumberChange
from stores import errors
from stores.api.base import TenantAPIView, get_actor
from stores.api.schema import AUTH, WRITE_AUTH, error_responses, errors_doc
from stores.errors import AppError
from stores.models import Market

TAG = "logistics"


def parse_query(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- carriers ----------------------------------------------------------------------------------------
class CarrierFilter(django_filters.FilterSet):
    market = django_filters.CharFilter(method="filter_market", max_length=2,
                                       help_text=("Market code, e.g. US: carriers serving it."))

    class Meta:
        model = Carrier
        fields: list[str] = []

    def filter_market(self, queryset, name, value):
        code = value.strip().upper()
        if not Market.objects.filter(code=code).exists():
            raise AppError(errors.ERR_VALIDATION, fields={"market": [str(_("Unknown market."))]})
        return queryset.filter(markets__contains=[code])


class CarrierPagination(LogPagination):
    ordering = "code"


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="Carriers",
    description=("Active carriers with their code, markets and the tracking-number format each validates. Not "
                 "tenant data. Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION")),
    responses={200: ls.CarrierSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
))
class CarrierListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ls.CarrierSerializer
    filterset_class = CarrierFilter
    pagination_class = CarrierPagination

    def get_queryset(self):
        return Carrier.objects.filter(is_active=True)


# --- return shipments ----------------------------------------------------------------------------------
class ShipmentFilter(django_filters.FilterSet):
    ticket = django_filters.UUIDFilter(field_name="ticket__public_id", help_text=("An after-sales request's id."))
    store = django_filters.UUIDFilter(field_name="ticket__store__public_id", help_text=("A store's id."))
    status = ChoiceInFilter(field_name="status", choices=ShipmentStatus.choices,
                            help_text=("Tracking status; several comma-separated."))

    class Meta:
        model = ReturnShipment
        fields: list[str] = []


class ShipmentPagination(LogPagination):
    ordering = "-id"


def shipments_for_actor(actor):
    """Return parcels through the gate (scoped by their request's store), with what a row shows joined."""
    return (ReturnShipment.objects.for_actor(actor)
            .select_related("carrier", "ticket__store__market"))


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="Return shipments",
    description=("Buyers' return parcels on the requests the caller may see (scoped by the request's store), "
                 "newest first. Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION")),
    responses={200: ls.ShipmentListSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
))
class ShipmentListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ls.ShipmentListSerializer
    filterset_class = ShipmentFilter
    pagination_class = ShipmentPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ReturnShipment.objects.for_actor(None)
        return shipments_for_actor(get_actor(self.request))



class ShipmentDetailView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="One return shipment with its tracking events",
        description=("The parcel, its carrier checkpoints (oldest first) and the numbers it had before."
                     + errors_doc(*AUTH, "ERR_NOT_FOUND")),
        responses={200: ls.ShipmentDetailSerializer, **error_responses(*AUTH, "ERR_NOT_FOUND")},
    )
    def get(self, request, shipment_id):
        shipment = (shipments_for_actor(get_actor(request)).by_id(str(shipment_id))
                    .prefetch_related(Prefetch("events", TrackingEvent.objects.order_by("occurred_at", "id")),
                                      Prefetch("number_history", TrackingNumberChange.objects
                                               .select_related("carrier").order_by("replaced_at", "id")))
                    .first())
        if shipment is None:
            raise AppError(errors.ERR_NOT_FOUND)
        return Response(ls.ShipmentDetailSerializer(shipment).data)


# --- return addresses ------------------------------------------------------------------------------------
ADDRESS_WRITE = ("ERR_VALIDATION", "ERR_LOG_501", "ERR_PERM_003")


def address_for_actor(actor, address_id) -> ReturnAddress:
    address = addresses.return_addresses_for_actor(actor).by_id(str(address_id)).first()
    if address is None:
        raise AppError(errors.ERR_NOT_FOUND)
    return address


def render_address(actor, address_id) -> dict:
    return ls.ReturnAddressSerializer(address_for_actor(actor, address_id)).data


@extend_schema_view(
    get=extend_schema(
        tags=[TAG], summary="Return addresses (退货地址管理)",
        description=("The addresses of the stores the caller may see. Cursor-paginated."
                     + errors_doc(*AUTH, "ERR_VALIDATION")),
        parameters=[ls.AddressListQuerySerializer],
        responses={200: ls.ReturnAddressSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
    ),
    post=extend_schema(
        tags=[TAG], summary="Add a return address",
        description=("In the store's own market; the phone is stored as E.164 of that market's country. The first "
                     "address of a store (or one sent with is_default) becomes its default. Needs “Manage "
                     "logistics” on the store." + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", *ADDRESS_WRITE)),
        request=ls.ReturnAddressCreateSerializer,
        responses={201: ls.ReturnAddressSerializer, **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", *ADDRESS_WRITE)},
    ),
)
class ReturnAddressListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ls.ReturnAddressSerializer
    pagination_class = LogPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ReturnAddress.objects.for_actor(None)
        store = parse_query(ls.AddressListQuerySerializer, self.request).get("store")
        return addresses.return_addresses_for_actor(get_actor(self.request), None if store is None else str(store))

    def post(self, request):
        data = dict(parse(ls.ReturnAddressCreateSerializer, request))
        store, market, is_default = str(data.pop("store")), data.pop("market", None), data.pop("is_default")
        actor = get_actor(request)
        address = addresses.create_return_address(actor, store, market=market or None, is_default=is_default,
                                                  **data)
        return Response(render_address(actor, address.public_id), status=status.HTTP_201_CREATED)


class ReturnAddressDetailView(TenantAPIView):
    @extend_schema(tags=[TAG], summary="One return address",
                   description="An address of a store the caller may see." + errors_doc(*AUTH, "ERR_NOT_FOUND"),
                   responses={200: ls.ReturnAddressSerializer, **error_responses(*AUTH, "ERR_NOT_FOUND")})
    def get(self, request, address_id):
        return Response(render_address(get_actor(request), address_id))

    @extend_schema(tags=[TAG], summary="Change a return address",
                   description=("Text fields or the phone (checked again). The default is changed with "
                                "set-default." + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", *ADDRESS_WRITE)),
                   request=ls.ReturnAddressUpdateSerializer,
                   responses={200: ls.ReturnAddressSerializer,
                              **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", *ADDRESS_WRITE)})
    def patch(self, request, address_id):
        data = parse(ls.ReturnAddressUpdateSerializer, request)
        actor = get_actor(request)
        address = addresses.update_return_address(actor, str(address_id), **data)
        return Response(render_address(actor, address.public_id))

    @extend_schema(tags=[TAG], summary="Delete a return address",
                   description=("When it was the default, the oldest remaining address of its store and market "
                                "becomes the default." + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_003")),
                   request=None,
                   responses={204: None, **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_003")})
    def delete(self, request, address_id):
        addresses.delete_return_address(get_actor(request), str(address_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReturnAddressDefaultView(TenantAPIView):
    @extend_schema(tags=[TAG], summary="Make a return address the default",
                   description=("The default of its store and market; the previous default is unset at once."
                                + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_003")),
                   request=None,
                   responses={200: ls.ReturnAddressSerializer,
                              **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_003")})
    def post(self, request, address_id):
        actor = get_actor(request)
        address = addresses.set_default_return_address(actor, str(address_id))
        return Response(render_address(actor, address.public_id))


# --- drop-off points -------------------------------------------------------------------------------------
class NearestDropOffView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="Nearest drop-off points (本地仓退货优先)",
        description=("The `limit` nearest active partner drop-off points of a market (great-circle distance) with "
                     "their pickup lead time, nearest first. A bounded top-N, so not paginated."
                     + errors_doc(*AUTH, "ERR_VALIDATION", "ERR_LOG_503")),
        parameters=[ls.NearestQuerySerializer],
        responses={200: ls.NearestResultSerializer, **error_responses(*AUTH, "ERR_VALIDATION", "ERR_LOG_503")},
    )
    def get(self, request):
        data = parse_query(ls.NearestQuerySerializer, request)
        found = dropoffs.nearest_dropoffs(data["market"], data["lat"], data["lng"], limit=data["limit"],
                                          max_km=data.get("max_km"))
        return Response(ls.NearestResultSerializer({"results": found}).data)
