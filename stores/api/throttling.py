"""Rate limits per API token (shared/API.md: 429 with ``Retry-After``, code ``ERR_THROTTLED``).

``TokenRateThrottle`` counts each token on its own, so two scripts of one user with two tokens do not slow each
other down; a browser session counts per user, an anonymous caller (only the public error-code list) per IP.
The rate is ``DEFAULT_THROTTLE_RATES["user"]`` (env ``API_THROTTLE_USER``, default 1200/min), read per request so
settings overrides apply. The counters live in Django's default cache: with the default local-memory cache that
is per process (N workers allow up to N× the rate); point ``CACHES`` at a shared cache to make it global.
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from stores.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    scope = "user"

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        if isinstance(token, ApiToken):
            ident = f"token:{token.pk}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
