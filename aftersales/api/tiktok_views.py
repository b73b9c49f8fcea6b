"""The TikTok Shop connector over REST: connected stores with their sync report, sync runs, a manual sync, and
sending a failed decision again. Thin adapters over ``aftersales.tiktok.reports``."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response

from aftersales.api import serializers as s
from aftersales.api import tiktok_serializers as ts
from aftersales.tiktok import reports
from config.api import CursorPagination
from stores import errors
from stores.api.base import TenantAPIView, get_actor
from stores.api.schema import AUTH, WRITE_AUTH, error_responses, errors_doc
from stores.errors import AppError

TAG = "tiktok shop"


class ConnectionPagination(CursorPagination):
    ordering = "id"


class RunPagination(CursorPagination):
    ordering = "-started_at"


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="Connected stores and their sync report",
    description=("Stores linked to a TikTok Shop seller authorisation, with the authorisation's state (tokens are "
                 "never shown), how far returns and cancellations have been read, and the last sync run (counts, "
                 "error code and the platform's code). Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION")),
    responses={200: ts.ConnectionSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
))
class ConnectionListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ts.ConnectionSerializer
    pagination_class = ConnectionPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return reports.connections_for_actor(None)
        return reports.connections_for_actor(get_actor(self.request))


@extend_schema_view(get=extend_schema(
    tags=[TAG], summary="Sync runs",
    description=("Every pull and webhook re-fetch of the stores the caller sees, newest first; `store` narrows to "
                 "one store. Cursor-paginated." + errors_doc(*AUTH, "ERR_VALIDATION")),
    parameters=[OpenApiParameter("store", OpenApiTypes.UUID, description="A store's id.")],
    responses={200: ts.SyncRunSerializer(many=True), **error_responses(*AUTH, "ERR_VALIDATION")},
))
class SyncRunListView(TenantAPIView, generics.ListAPIView):
    serializer_class = ts.SyncRunSerializer
    pagination_class = RunPagination
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return reports.runs_for_actor(None)
        store = self.request.query_params.get("store")
        if store is not None:
            try:
                store = uuid.UUID(store)
            except ValueError:
                raise AppError(errors.ERR_VALIDATION, fields={"store": ["a store id (UUID)"]}) from None
        return reports.runs_for_actor(get_actor(self.request), store)


class StoreSyncView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="Sync a store now",
        description=("Queues a pull of the store's returns and cancellations (202). One runs at a time per store: "
                     "a pull already running covers the same changes. Needs after-sales handling on the store."
                     + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_001", "ERR_TTS_006")),
        request=None,
        responses={202: None, **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_001", "ERR_TTS_006")},
    )
    def post(self, request, store_id):
        reports.start_sync(get_actor(request), store_id)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class ResendDecisionView(TenantAPIView):
    @extend_schema(
        tags=[TAG], summary="Send a failed decision to TikTok Shop again",
        description=("The request's last decision, refused by the platform or out of retries, is sent again with "
                     "its own idempotency key (the platform applies it at most once). Answers the decision, now "
                     "`sending`." + errors_doc(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_001", "ERR_TTS_012")),
        request=None,
        responses={202: s.PlatformDecisionSerializer,
                   **error_responses(*WRITE_AUTH, "ERR_NOT_FOUND", "ERR_PERM_001", "ERR_TTS_012")},
    )
    def post(self, request, ticket_id):
        decision = reports.resend_decision(get_actor(request), ticket_id)
        return Response(s.PlatformDecisionSerializer(decision).data, status=status.HTTP_202_ACCEPTED)
