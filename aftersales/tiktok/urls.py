"""Browser routes of the TikTok Shop connector (namespace ``tiktok``) and the platform's webhook endpoint."""

from django.urls import path

from aftersales.tiktok import connect_views
from aftersales.tiktok.webhook_views import receive as webhooks_view

app_name = "tiktok"

urlpatterns = [
    path("connect/tiktok/", connect_views.index, name="connect"),
    path("connect/tiktok/apps/<uuid:app_id>/authorize/", connect_views.start, name="authorize"),
    path("connect/tiktok/callback/", connect_views.callback, name="callback"),
    path("connect/tiktok/stores/<uuid:store_id>/disconnect/", connect_views.disconnect, name="disconnect"),
    path("webhooks/tiktok/<uuid:app_id>/", webhooks_view, name="tiktok_webhook"),
]
