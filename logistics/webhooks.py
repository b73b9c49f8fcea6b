"""Carrier webhook views: POST /webhooks/aftership/ and /webhooks/17track/ (thin; see services.receive_webhook).

The agency is named by ``?endpoint=<WebhookEndpoint.public_id>``: API.md fixes the paths, yet each agency
signs with its own secret (its AfterShip webhook secret or 17TRACK API key), so the receiver must know
whose secret to check *before* trusting the body. The public id is not a secret; the signature is the proof.
Errors use the API envelope; a replay answers 200 with no second effect.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from config.api import json_error
from logistics import services
from logistics.models import WebhookEndpoint
from stores import errors
from stores.errors import AppError


def _receive(request, provider: str, header: str):
    if request.method != "POST":
        response = json_error(request, errors.ERR_METHOD)
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return json_error(request, errors.ERR_TOO_LARGE)
    try:
        outcome = services.receive_webhook(provider, request.GET.get("endpoint", ""),
                                           signature=request.headers.get(header, ""), body=body)
    except AppError as exc:
        return json_error(request, exc.error)
    return JsonResponse({"ok": True, "outcome": outcome})


@csrf_exempt
def aftership(request):
    return _receive(request, WebhookEndpoint.Provider.AFTERSHIP, "aftership-hmac-sha256")


@csrf_exempt
def seventeentrack(request):
    return _receive(request, WebhookEndpoint.Provider.SEVENTEENTRACK, "sign")
