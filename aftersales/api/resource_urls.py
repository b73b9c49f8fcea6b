"""Quick replies, buyer history and the analytics summary."""

from django.urls import path

from aftersales.api import resource_views as views

urlpatterns = [
    path("replies/", views.QuickReplyListView.as_view(), name="reply-list"),
    path("replies/check/", views.ReplyCheckView.as_view(), name="reply-check"),
    path("replies/<uuid:reply_id>/", views.QuickReplyDetailView.as_view(), name="reply-detail"),
    path("buyers/<str:buyer_id>/history/", views.BuyerHistoryView.as_view(), name="buyer-history"),
    path("analytics/summary/", views.AnalyticsSummaryView.as_view(), name="analytics-summary"),
    path("analytics/order-volumes/", views.OrderVolumeView.as_view(), name="analytics-order-volumes"),
]
