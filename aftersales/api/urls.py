from django.urls import path

from aftersales.api import views

# Return-parcel actions (tracking, intercept) live in logistics.api.ticket_urls: logistics depends on
# aftersales, never the other way round.
urlpatterns = [
    path("aftersales/", views.TicketListView.as_view(), name="aftersales-list"),
    path("aftersales/bulk/", views.BulkView.as_view(), name="aftersales-bulk"),
    path("aftersales/<uuid:ticket_id>/", views.TicketDetailView.as_view(), name="aftersales-detail"),
    path("aftersales/<uuid:ticket_id>/logs/", views.TicketLogView.as_view(), name="aftersales-logs"),
    path("aftersales/<uuid:ticket_id>/approve/", views.ApproveView.as_view(), name="aftersales-approve"),
    path("aftersales/<uuid:ticket_id>/reject/", views.RejectView.as_view(), name="aftersales-reject"),
    path("aftersales/<uuid:ticket_id>/refund/", views.RefundView.as_view(), name="aftersales-refund"),
    path("aftersales/<uuid:ticket_id>/request-evidence/", views.RequestEvidenceView.as_view(),
         name="aftersales-request-evidence"),
    path("aftersales/<uuid:ticket_id>/evidence/", views.EvidenceUploadView.as_view(), name="aftersales-evidence"),
    path("aftersales/<uuid:ticket_id>/close/", views.CloseView.as_view(), name="aftersales-close"),
    path("aftersales/<uuid:ticket_id>/escalate/", views.EscalateView.as_view(), name="aftersales-escalate"),
    path("aftersales/<uuid:ticket_id>/reply/", views.ReplyView.as_view(), name="aftersales-reply"),
    path("aftersales/<uuid:ticket_id>/ship-replacement/", views.ShipReplacementView.as_view(),
         name="aftersales-ship-replacement"),
]
