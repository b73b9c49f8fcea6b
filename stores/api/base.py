"""What every tenant API view shares: the actor of the caller, resolved once per request."""

from rest_framework.views import APIView

from stores import errors
from stores.errors import AppError
from stores.scoping import Actor
from stores.services import actor_for_user


def get_actor(request) -> Actor:
    actor = getattr(request, "_actor", None)
    if actor is None:
        actor = actor_for_user(request.user)
        if actor is None:
            raise AppError(errors.ERR_AUTH_004)
        request._actor = actor
    return actor


class TenantAPIView(APIView):
    """Base for views over tenant data: authenticated and a member of an agency."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        get_actor(request)
