"""Request id: one per request, echoed in ``X-Request-ID``, on every log line and log row."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# An id sent by a proxy or client is kept only when it is short and harmless (it lands in logs).
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
HEADER = "X-Request-ID"


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> contextvars.Token:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(HEADER, "")
        rid = incoming if _SAFE_ID.match(incoming) else new_request_id()
        request.request_id = rid
        token = set_request_id(rid)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response[HEADER] = rid
        return response


class NulInPathMiddleware:
    """A NUL character in the path can name nothing we store (PostgreSQL text cannot hold it), so such a URL
    is missing — 404 through the usual handler — before any view sends it to the database. (Query strings
    and bodies are checked by their form and serializer fields.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path_info:
            from django.http import Http404

            raise Http404
        return self.get_response(request)


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True
