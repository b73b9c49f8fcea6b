"""Return-parcel actions on a request, under the request's own path (shared/API.md):
POST /api/v1/aftersales/{id}/tracking/ and /intercept/. They call logistics services, so they live here
(logistics depends on aftersales, never the other way round)."""

from django.urls import path

from logistics.api import ticket_views as views

urlpatterns = [
    path("aftersales/<uuid:ticket_id>/tracking/", views.TrackingView.as_view(), name="aftersales-tracking"),
    path("aftersales/<uuid:ticket_id>/intercept/", views.InterceptView.as_view(), name="aftersales-intercept"),
]
