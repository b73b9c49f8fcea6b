"""Browser views: thin adapters over the stores and after-sales selectors (no rules here)."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from portal.queue import CURSOR_PARAM, page_query, queue_page
from portal.request import (
    AFTER_PARAM,
    HANDLERS,
    KEY_FIELD,
    Failed,
    Outcome,
    ShownError,
    Submission,
    done_message,
    position_token,
    run_once,
    ticket_position,
    workspace,
)
from stores import errors
from stores.errors import AppError
from stores.selectors import stores_for_actor
from stores.services import actor_for_user

SESSION_STORE_KEY = "portal.current_store"


class PortalLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


def no_agency(request):
    return render(request, "portal/no_agency.html", {"error": errors.ERR_AUTH_004}, status=403)


def remember_store(request, stores, choice: str) -> None:
    """The store switcher: a choice kept in the session, never a re-login (DOMAIN: the app forces one).
    A store the user cannot see (another agency's, an ungranted one, garbage) means "all stores"."""
    request.session[SESSION_STORE_KEY] = choice if any(str(s.public_id) == choice for s in stores) else ""


def current_store(request, stores):
    """The store the switcher holds, when it is still one the user may see; None = all stores."""
    current = request.session.get(SESSION_STORE_KEY, "")
    return next((s for s in stores if str(s.public_id) == current), None) if current else None


def stores_in_view(request, actor):
    """(every store the actor may see, the switcher's store or None, the stores a page covers now)."""
    stores = list(stores_for_actor(actor))
    current = current_store(request, stores)
    return stores, current, ([current] if current is not None else stores)


@login_required
def home(request):
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores = list(stores_for_actor(actor))
    if "store" in request.GET:
        remember_store(request, stores, request.GET["store"])
        return redirect("portal:home")
    current = request.session.get(SESSION_STORE_KEY, "")
    selected = [s for s in stores if str(s.public_id) == current] or stores
    return render(request, "portal/home.html", {
        "actor": actor, "stores": stores, "selected": selected, "current": current,
    })


@login_required
@require_POST
def switch_store(request):
    """The switcher on pages other than home: remember the choice, then back to where the user was."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    remember_store(request, list(stores_for_actor(actor)), request.POST.get("current_store", ""))
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("portal:home")
    return redirect(target)


@login_required
def queue(request):
    """售后单队列: the open requests of the stores in view, soonest deadline first, 50 a page."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    stores, current, scope = stores_in_view(request, actor)
    result = queue_page(request, actor, scope, current)
    here = request.GET.copy()
    here.pop(CURSOR_PARAM, None)  # a new store selection starts again from the first page
    return render(request, "portal/queue.html", {
        "actor": actor,
        "stores": stores,
        "current": current,
        "form": result.form,
        "rows": result.rows,
        "page": result.page,
        "labels": result.labels,
        "now": result.now,
        "next_query": page_query(request.GET, result.page.next_cursor),
        "prev_query": page_query(request.GET, result.page.prev_cursor),
        "first_query": page_query(request.GET, ""),
        "switch_next": f"{request.path}?{here.urlencode()}" if here else request.path,
        "validation_error": errors.ERR_VALIDATION,
    })


# --- the request workspace (售后单工作台) --------------------------------------------------------------
def not_found(request, back_url: str, back_label: str, title: str = ""):
    """Unknown, another agency's or not visible: one page for every kind of object, nothing about it confirmed."""
    return render(request, "portal/missing.html", {"error": errors.ERR_NOT_FOUND, "back_url": back_url,
                                                   "back_label": back_label, "title": title}, status=404)


def request_missing(request):
    """Unknown, another agency's or a store not granted: the same page, nothing about the request confirmed."""
    return not_found(request, reverse("portal:queue"), _("Back to the after-sales queue"), _("Request not found"))


def render_workspace(request, actor, ticket_id, *, failed: Failed | None = None, reply_post=None, status: int = 200):
    scope = current_store(request, list(stores_for_actor(actor)))
    try:
        context = workspace(request, actor, ticket_id, scope=scope, failed=failed, reply_post=reply_post)
    except AppError as exc:
        if exc.error is errors.ERR_NOT_FOUND:
            return request_missing(request)
        raise
    if context["reply_error"] is not None:
        status = context["reply_error"].status
    return render(request, "portal/request.html", context, status=status)


@login_required
def request_page(request, ticket_id):
    """One request: what the buyer asked, the evidence side by side, amounts, fees, deadlines, the buyer's history,
    the operation log, the platform's side — and the actions this person may take now."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    return render_workspace(request, actor, ticket_id)


REPLAY_HEADER = "X-Portal-Replay"


def replay_answer(outcome) -> JsonResponse:
    """A form kept offline and sent by live.js: the outcome as JSON instead of a page (the panel shows it).
    Same once-per-key rule as a plain submit; a repeat answers the first result with ``replayed``."""
    if outcome.ok:
        return JsonResponse({"ok": True, "message": outcome.message, "replayed": outcome.replayed})
    error = ShownError.of(outcome.error)
    return JsonResponse({"ok": False, "replayed": outcome.replayed, "error": {
        "code": error.code, "message": error.detail or error.message, "hint": error.hint,
        "fields": {name: values for name, values in error.fields}}}, status=error.status)


@login_required
@require_POST
def request_act(request, ticket_id, action):
    """One action's form: the service call (once per form key), then back to the page (PRG) with a message; a
    refusal re-renders the page with the code, message and hint next to the form, in the error's status."""
    actor = actor_for_user(request.user)
    if actor is None:
        return no_agency(request)
    position = ticket_position(actor, ticket_id)
    if position is None or action not in HANDLERS:
        if request.headers.get(REPLAY_HEADER) == "1":
            return replay_answer(Outcome(False, error=AppError(errors.ERR_NOT_FOUND)))
        return request_missing(request)
    if action == "reply" and request.POST.get("intent") == "check":
        # The sensitive-word check before sending: nothing is sent, nothing is logged, the page shows the result.
        return render_workspace(request, actor, ticket_id, reply_post=request.POST)
    handler = HANDLERS[action][0]
    submission = Submission(actor, str(ticket_id), request.POST, request.FILES)
    outcome = run_once(request, lambda: handler(submission))
    if request.headers.get(REPLAY_HEADER) == "1":
        return replay_answer(outcome)
    if outcome.ok:
        messages.success(request, done_message(outcome))
        target = reverse("portal:request", kwargs={"ticket_id": ticket_id})
        return redirect(f"{target}?{urlencode({AFTER_PARAM: position_token(request.GET, position)})}")
    error = ShownError.of(outcome.error)
    values = {k: v for k, v in request.POST.items() if k not in (KEY_FIELD, "csrfmiddlewaretoken")}
    return render_workspace(request, actor, ticket_id, failed=Failed(action, error, values), status=error.status)
