from django.contrib.auth import views as auth_views
from django.urls import path

from portal import alerts, batch, dashboard, editors, files, team, views

app_name = "portal"

urlpatterns = [
    path("login/", views.PortalLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.home, name="home"),
    path("queue/", views.queue, name="queue"),
    path("switch-store/", views.switch_store, name="switch_store"),
    path("requests/<uuid:ticket_id>/", views.request_page, name="request"),
    path("requests/<uuid:ticket_id>/act/<slug:action>/", views.request_act, name="request_act"),
    path("files/evidence/<uuid:evidence_id>/", files.evidence_file, name="evidence_file"),
    path("files/labels/<uuid:label_id>.pdf", files.return_label, name="return_label"),
]

# Each area of the portal declares its own routes next to its views.
for _area in (batch, dashboard, team, editors, alerts):
    urlpatterns += _area.urlpatterns
