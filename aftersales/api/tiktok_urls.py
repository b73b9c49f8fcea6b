"""The TikTok Shop connector's API routes."""

from django.urls import path

from aftersales.api import tiktok_views as views

urlpatterns = [
    path("tiktok/connections/", views.ConnectionListView.as_view(), name="tiktok-connections"),
    path("tiktok/sync-runs/", views.SyncRunListView.as_view(), name="tiktok-sync-runs"),
    path("tiktok/stores/<uuid:store_id>/sync/", views.StoreSyncView.as_view(), name="tiktok-store-sync"),
    path("aftersales/<uuid:ticket_id>/platform-decision/resend/", views.ResendDecisionView.as_view(),
         name="aftersales-platform-resend"),
]
