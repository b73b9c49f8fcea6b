"""Browser views for connecting TikTok Shop stores: thin adapters over ``aftersales.tiktok.connect``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from aftersales.tiktok import connect
from aftersales.tiktok.client import TikTokError
from stores import errors
from stores.errors import AppError
from stores.services import actor_for_user


def _error(request, exc: AppError):
    context = {"error": exc.error, "detail": exc.detail,
               "platform_code": exc.platform_code if isinstance(exc, TikTokError) else None}
    return render(request, "tiktok/error.html", context, status=exc.status)


@never_cache
@login_required
@require_GET
def index(request):
    actor = actor_for_user(request.user)
    if actor is None:
        return _error(request, AppError(errors.ERR_AUTH_004))
    return render(request, "tiktok/connect.html", {
        "apps": list(connect.partner_apps_for(actor)),
        "links": list(connect.links_for(actor)),
        "can_connect": connect.can_connect(actor, actor.agency_id),
    })


@login_required
@require_POST
def start(request, app_id):
    actor = actor_for_user(request.user)
    try:
        if actor is None:
            raise AppError(errors.ERR_AUTH_004)
        url = connect.authorize_link(actor, connect.app_for(actor, app_id))
    except AppError as exc:
        return _error(request, exc)
    return HttpResponseRedirect(url)


@never_cache
@login_required
@require_GET
def callback(request):
    actor = actor_for_user(request.user)
    staff_user = request.user if connect.is_connecting_staff(request.user) else None
    try:
        if actor is None and staff_user is None:
            raise AppError(errors.ERR_AUTH_004)
        result = connect.complete(actor, request.GET.get("state", ""), request.GET.get("code", ""),
                                  staff_user=staff_user)
    except AppError as exc:
        return _error(request, exc)
    return render(request, "tiktok/result.html", {"result": result, "in_agency": actor is not None})


@login_required
@require_POST
def disconnect(request, store_id):
    actor = actor_for_user(request.user)
    try:
        if actor is None:
            raise AppError(errors.ERR_AUTH_004)
        store = connect.store_for(actor, store_id)
        connect.disconnect(actor, store)
    except AppError as exc:
        return _error(request, exc)
    messages.success(request, _("%(store)s is disconnected: its sync has stopped; its requests are kept.")
                     % {"store": store.name})
    return redirect("tiktok:connect")
