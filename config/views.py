"""Site-wide views: health check and error pages that speak the API envelope under /api/."""

from django.db import connection
from django.http import JsonResponse
from django.views import defaults

from config.api import json_error
from stores import errors


def healthz(request):
    """Database reachable, plus the age of the last worker heartbeat (null until the first)."""
    from django.utils import timezone

    from stores.models import Heartbeat

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    beat = Heartbeat.objects.filter(name="worker").first()
    age = None if beat is None else round((timezone.now() - beat.seen_at).total_seconds(), 1)
    return JsonResponse({"status": "ok", "database": "ok", "worker_heartbeat_age_s": age})


def _is_api(request) -> bool:
    return request.path.startswith(("/api/", "/webhooks/"))


def not_found(request, exception=None):
    if _is_api(request):
        return json_error(request, errors.ERR_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return json_error(request, errors.ERR_INTERNAL)
    return defaults.server_error(request)
