"""Carriers, return shipments and tracking events, return addresses, drop-off points."""

from django.urls import path

from logistics.api import views

urlpatterns = [
    path("carriers/", views.CarrierListView.as_view(), name="carrier-list"),
    path("shipments/", views.ShipmentListView.as_view(), name="shipment-list"),
    path("shipments/<uuid:shipment_id>/", views.ShipmentDetailView.as_view(), name="shipment-detail"),
    path("return-addresses/", views.ReturnAddressListView.as_view(), name="return-address-list"),
    path("return-addresses/<uuid:address_id>/", views.ReturnAddressDetailView.as_view(),
         name="return-address-detail"),
    path("return-addresses/<uuid:address_id>/set-default/", views.ReturnAddressDefaultView.as_view(),
         name="return-address-set-default"),
    path("dropoffs/nearest/", views.NearestDropOffView.as_view(), name="dropoff-nearest"),
]
