"""API conventions shared by every app: the error envelope, cursor pagination, actor lookup."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, pagination
from rest_framework.response import Response

from config.middleware import current_request_id
from stores import errors
from stores.errors import AppError, problem_for

log = logging.getLogger("api")


INVALID_CURSOR = _("Invalid cursor: start again from the first page (the ordering may have changed).")


class CursorPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

    def decode_cursor(self, request):
        """A cursor that does not decode is the client's input: 400 ERR_VALIDATION, not DRF's 404."""
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from None


def _fields(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(value, list | tuple):
                out[str(key)] = [str(v) for v in value]
            elif isinstance(value, dict):
                for sub, msgs in _fields(value).items():
                    out[f"{key}.{sub}"] = msgs
            else:
                out[str(key)] = [str(value)]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(v) for v in detail]}
    return {"non_field_errors": [str(detail)]}


def _for_drf(exc: exceptions.APIException):
    """Map a DRF exception onto a catalogue entry (plus field errors for validation)."""
    if isinstance(exc, exceptions.ValidationError):
        return errors.ERR_VALIDATION, _fields(exc.detail), None
    if isinstance(exc, exceptions.NotAuthenticated):
        return errors.ERR_AUTH_001, None, None
    if isinstance(exc, exceptions.AuthenticationFailed):
        return errors.ERR_AUTH_002, None, None
    if isinstance(exc, exceptions.Throttled):
        return errors.ERR_THROTTLED, None, None
    if isinstance(exc, exceptions.NotFound):
        return errors.ERR_NOT_FOUND, None, None
    if isinstance(exc, exceptions.MethodNotAllowed):
        return errors.ERR_METHOD, None, None
    if isinstance(exc, exceptions.NotAcceptable):
        return errors.ERR_NOT_ACCEPTABLE, None, None
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return errors.ERR_MEDIA_TYPE, None, None
    if isinstance(exc, exceptions.ParseError):
        return errors.ERR_PARSE, None, None
    if isinstance(exc, exceptions.PermissionDenied):
        # DRF's session authentication refuses a missing/wrong CSRF token with PermissionDenied.
        if str(exc.detail).startswith("CSRF Failed"):
            return errors.ERR_AUTH_005, None, None
        return errors.ERR_PERM_000, None, None
    return errors.ERR_INTERNAL, None, None


def exception_handler(exc, context):
    """Render every failure as the one envelope of API.md."""
    rid = current_request_id()
    headers: dict[str, str] = {}
    if isinstance(exc, AppError):
        problem = problem_for(exc.error, detail=exc.detail, fields=exc.fields, request_id=rid)
        status = exc.status
    elif isinstance(exc, Http404):
        problem, status = problem_for(errors.ERR_NOT_FOUND, request_id=rid), 404
    elif isinstance(exc, DjangoPermissionDenied):
        problem, status = problem_for(errors.ERR_PERM_000, request_id=rid), 403
    elif isinstance(exc, exceptions.APIException):
        error, fields, _detail = _for_drf(exc)
        problem = problem_for(error, fields=fields, request_id=rid)
        status = exc.status_code
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
    else:
        log.exception("unhandled API error", exc_info=exc)
        problem, status = problem_for(errors.ERR_INTERNAL, request_id=rid), 500
    return Response(problem.as_envelope(), status=status, headers=headers)


def json_error(request, error: errors.ErrorCode) -> JsonResponse:
    problem = problem_for(error, request_id=getattr(request, "request_id", None) or current_request_id())
    return JsonResponse(problem.as_envelope(), status=error.status, json_dumps_params={"ensure_ascii": False})
