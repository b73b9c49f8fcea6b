"""POST /webhooks/tiktok/<app public id>/ — TikTok Shop webhooks (thin; see aftersales.tiktok.webhooks.receive).

The URL names the partner app, so the receiver knows whose secret to check *before* trusting the body; the
public id is not a secret, the ``Authorization`` signature is the proof. The body is read raw (never parsed
before it is verified) and at most ``TTS_WEBHOOK_MAX_BYTES``. Errors use the API envelope; a replay answers
200 with no second effect. No platform call is made here: processing happens in a task after commit.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from aftersales.tiktok import webhooks
from config.api import json_error
from stores import errors
from stores.errors import AppError


def _declared_length(request) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


@csrf_exempt
def receive(request, app_id):
    if request.method != "POST":
        response = json_error(request, errors.ERR_METHOD)
        response["Allow"] = "POST"
        return response
    limit = settings.TTS_WEBHOOK_MAX_BYTES
    if _declared_length(request) > limit:
        return json_error(request, errors.ERR_TOO_LARGE)
    try:
        # One byte more than allowed, so a body without (or under-declaring) Content-Length is caught too.
        raw = request.read(limit + 1)
    except RequestDataTooBig:
        return json_error(request, errors.ERR_TOO_LARGE)
    if len(raw) > limit:
        return json_error(request, errors.ERR_TOO_LARGE)
    try:
        outcome = webhooks.receive(app_id, authorization=request.headers.get("Authorization"), body=raw)
    except AppError as exc:
        return json_error(request, exc.error)
    return JsonResponse({"ok": True, "outcome": outcome})
