"""Browser views: thin adapters over the stores selectors (no rules here)."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from stores import errors
from stores.selectors import stores_for_actor
from stores.services import actor_for_user

SESSION_STORE_KEY = "portal.current_store"


class PortalLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


@login_required
def home(request):
    actor = actor_for_user(request.user)
    if actor is None:
        return render(request, "portal/no_agency.html", {"error": errors.ERR_AUTH_004}, status=403)
    stores = list(stores_for_actor(actor))
    # The store switcher: a choice kept in the session, never a re-login (DOMAIN: the app forces one).
    if "store" in request.GET:
        choice = request.GET["store"]
        request.session[SESSION_STORE_KEY] = choice if any(str(s.public_id) == choice for s in stores) else ""
        return redirect("portal:home")
    current = request.session.get(SESSION_STORE_KEY, "")
    selected = [s for s in stores if str(s.public_id) == current] or stores
    return render(request, "portal/home.html", {
        "actor": actor, "stores": stores, "selected": selected, "current": current,
    })
