from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("stores.api.urls")),
    path("api/v1/", include("aftersales.api.urls")),
    path("api/v1/", include("logistics.api.ticket_urls")),
    path("api/v1/", include("aftersales.api.exchange_urls")),
    path("api/v1/", include("aftersales.api.resource_urls")),
    path("api/v1/", include("logistics.api.urls")),
    path("api/v1/", include("aftersales.api.tiktok_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", views.healthz, name="healthz"),
    path("webhooks/", include("logistics.webhook_urls")),
    path("", include("aftersales.tiktok.urls")),
    path("", include("portal.urls")),
]

handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
