"""OpenAPI helpers every API module shares: the error envelope and the codes an endpoint can answer with.

They live in the tenancy kernel so that stores, aftersales and logistics endpoints describe errors the same
way (stores may not import the apps built on it)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from stores.errors import CATALOGUE

AUTH = ("ERR_AUTH_001", "ERR_AUTH_002", "ERR_AUTH_004")
WRITE_AUTH = (*AUTH, "ERR_AUTH_005")


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A catalogue code (GET /api/v1/error-codes/).")
    message = serializers.CharField()
    hint = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    request_id = serializers.CharField(allow_null=True)


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


def errors_doc(*codes: str) -> str:
    """The error codes an endpoint can answer with, from the catalogue (so the docs cannot drift)."""
    lines = [f"- `{code}` ({CATALOGUE[code].status}): {CATALOGUE[code].localised('en')['message']}" for code in codes]
    return "\n\nErrors (envelope `{\"error\": {code, message, hint, fields, request_id}}`):\n" + "\n".join(lines)


def error_example(code: str, status_code: int) -> OpenApiExample:
    """The envelope exactly as a client receives it for ``code`` (English texts; zh-hans with Accept-Language)."""
    texts = CATALOGUE[code].localised("en")
    fields = {"amount": ["A valid number is required."]} if code == "ERR_VALIDATION" else {}
    return OpenApiExample(code, response_only=True, status_codes=[str(status_code)], value={"error": {
        "code": code, "message": texts["message"], "hint": texts["hint"], "fields": fields,
        "request_id": "3f1c2a9e8b7d4c6e9a0b1c2d3e4f5a6b"}})


def error_responses(*codes: str) -> dict:
    """The envelope as the response of each status those codes use: the codes in its description, and one
    example per code."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(CATALOGUE[code].status, []).append(code)
    return {status_code: OpenApiResponse(ErrorEnvelopeSerializer, description=", ".join(names),
                                         examples=[error_example(code, status_code) for code in names])
            for status_code, names in by_status.items()}
