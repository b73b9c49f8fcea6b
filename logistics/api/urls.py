"""Carriers, return shipments and tracking events, return addresses, drop-off points."""

urlpatterns: list = []
